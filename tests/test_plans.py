"""Dynamic plans (docs/plans.md): a planner's plan is checked before anything runs, every error
goes back to the planner, its steps run in dependency order under every invariant, a stalled plan
is replanned up to a cap, and a killed planned run resumes without re-running finished steps."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hubspoke import (
    Budget,
    Context,
    DefinitionError,
    EventKind,
    Foreman,
    Phase,
    Plan,
    PlanStep,
    Role,
    SQLiteStore,
    Strategy,
    Workflow,
)
from hubspoke.foreman._plan_next import Done, Ready, Stalled, Waiting, next_steps, stall_account
from hubspoke.foreman._plans import check_plan, width
from hubspoke.loader import load_workflow
from hubspoke.models.offline import answer
from hubspoke.testing import SideEffects, payload_errors, scripted, stream
from tests.helpers import Killed, kill_when
from tests.test_resume import assert_contiguous, start_and_kill
from tests.workflows.planned import ROLES, Answer, Ask, Finding, Merge, Query

pytestmark = pytest.mark.anyio

ROLE_CARDS = {r.name: r for r in ROLES}


class Counted(BaseModel):
    n: int


class Tally(BaseModel):
    total: int
    label: str = ""


ROLE_CARDS["counter"] = Role(
    name="counter", purpose="Count.", input=Counted, output=Tally, function=lambda i, c: i
)


def step(id: str, role: str = "searcher", **fields: Any) -> dict[str, Any]:
    fields.setdefault("input", {"query": id} if role == "searcher" else {})
    return {"id": id, "role": role, "objective": f"do {id}", **fields}


def merge_of(*ids: str, id: str = "m") -> dict[str, Any]:
    return step(id, "merger", input={"findings": [{"$from": i} for i in ids]})


def errors_of(steps: list[dict[str, Any]], **limits: Any) -> list[str]:
    """The plan's errors as ``loc: msg`` lines (empty: valid)."""
    args: dict[str, Any] = {
        "roles": ROLE_CARDS,
        "allowed": ["searcher", "merger"],
        "kept": {},
        "used": set(),
        "max_steps": 5,
        "max_parallel": 3,
    } | limits
    plan = Plan.model_validate({"steps": steps})
    found = check_plan(plan, **args)
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in found]


# --- the plan check, from a table --------------------------------------------------------------

INVALID = [
    ("no steps", [], {}, "steps: a plan needs at least one step"),
    (
        "unknown role",
        [step("a", "oracle")],
        {},
        "steps.0.role: no role named 'oracle' (roles this plan may use: searcher, merger)",
    ),
    (
        "role the planner may not use",
        [step("a", "counter", input={"n": 1})],
        {},
        "steps.0.role: this plan may not use the role 'counter'",
    ),
    (
        "input invalid for the role, strictly",
        [step("a", input={"query": "x", "depth": "2"})],
        {},
        "steps.0.input.depth: Input should be a valid integer",
    ),
    (
        "input missing a required field",
        [step("a", input={})],
        {},
        "steps.0.input.query: Field required",
    ),
    (
        "reference to a missing step",
        [merge_of("a", "ghost", id="m"), step("a")],
        {},
        "steps.0.input.findings: no step 'ghost' to take the output of",
    ),
    (
        "reference to a field the output does not have",
        [step("a"), step("b", input={"query": {"$from": "a", "field": "title"}})],
        {},
        "steps.1.input.query: step 'a' (role 'searcher') outputs Finding, which has no field "
        "'title'",
    ),
    (
        "reference whose output does not fit the input field",
        [step("a"), step("b", input={"query": {"$from": "a"}})],
        {},
        "steps.1.input.query: takes str, but step 'a' (role 'searcher') gives Finding",
    ),
    (
        "a list of references into a field that is no list",
        [step("a"), step("b", input={"query": [{"$from": "a"}]})],
        {},
        "steps.1.input.query: a list of references fills a list field",
    ),
    (
        "malformed reference",
        [step("a"), step("b", "merger", input={"findings": [{"$from": "a", "x": 1}]})],
        {},
        'steps.1.input.findings: a reference has only "$from" and optionally "field"',
    ),
    (
        "waiting for a missing step",
        [step("a", after=["nope"])],
        {},
        "steps.0.after.0: no step 'nope' to wait for",
    ),
    (
        "a cycle",
        [step("a", after=["b"]), step("b", after=["a"])],
        {},
        "steps: the steps wait for one another in a cycle: a -> b -> a",
    ),
    (
        "more steps than allowed",
        [step(f"s{i}", after=[f"s{i - 1}"] if i else []) for i in range(6)],
        {},
        "steps: 6 steps, more than max_steps=5",
    ),
    (
        "wider than allowed",
        [step("a"), step("b"), step("c"), step("d"), merge_of("a", "b", "c", "d")],
        {},
        "steps: 4 steps could run at once (a, b, c, d), more than max_parallel=3",
    ),
    (
        "duplicate ids",
        [step("a"), step("a")],
        {},
        "steps.1.id: 'a' is also the id of steps[0]: ids must be unique",
    ),
    ("an id that is no id", [step("A b")], {}, "steps.0.id: 'A b' is not a step id"),
    (
        "repeating a step accepted in an earlier plan",
        [step("a")],
        {"kept": {"a": "searcher"}},
        "steps.0.id: step 'a' was already accepted in an earlier plan and is kept",
    ),
    (
        "reusing the id of an earlier plan's step",
        [step("a")],
        {"used": {"a"}},
        "steps.0.id: 'a' was the id of a step of an earlier plan: give new steps new ids",
    ),
]


@pytest.mark.parametrize(
    ("steps", "limits", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_an_invalid_plan_is_refused_naming_the_step_and_the_fault(
    steps: list[dict[str, Any]], limits: dict[str, Any], expected: str
) -> None:
    errors = errors_of(steps, **limits)
    assert any(e.startswith(expected) for e in errors), errors


VALID = [
    ("one step", [step("a")], {}),
    ("references fill required fields", [step("a"), step("b"), merge_of("a", "b")], {}),
    (
        "a field reference whose type fits",
        [step("a"), step("b", input={"query": {"$from": "a", "field": "text"}})],
        {},
    ),
    ("referencing a kept step", [step("b"), merge_of("a", "b")], {"kept": {"a": "searcher"}}),
    (
        "a chain as long as max_steps, one wide",
        [step(f"s{i}", after=[f"s{i - 1}"] if i else []) for i in range(5)],
        {"max_parallel": 1},
    ),
]


@pytest.mark.parametrize(("steps", "limits"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_a_valid_plan_has_no_errors(steps: list[dict[str, Any]], limits: dict[str, Any]) -> None:
    assert errors_of(steps, **limits) == []


def test_every_error_of_a_plan_is_listed_at_once() -> None:
    errors = errors_of([step("a", "oracle"), step("b", input={"query": 3}), step("c", after=["c"])])
    assert [e.split(":")[0] for e in errors] == [
        "steps.0.role",
        "steps.1.input.query",
        "steps",
    ]


@pytest.mark.parametrize(
    ("graph", "most"),
    [
        ({"a": []}, 1),
        ({"a": [], "b": [], "c": ["a", "b"]}, 2),
        ({"a": [], "b": ["a"], "c": ["b"]}, 1),
        # a diamond under two roots: b and c at once, and d with either of them
        ({"a": [], "b": ["a"], "c": ["a"], "d": []}, 3),
        # levels are not the width: x waits for a long chain, yet runs beside it
        ({"a": [], "b": ["a"], "c": ["b"], "x": [], "y": ["x"]}, 2),
    ],
)
def test_width_is_the_most_steps_that_could_run_at_once(
    graph: dict[str, list[str]], most: int
) -> None:
    found, chain = width(graph)
    assert found == most == len(chain)


# --- what runs next, from a table ---------------------------------------------------------------

A, B = PlanStep(id="a", role="r", objective="o"), PlanStep(id="b", role="r", objective="o")
M = PlanStep(id="m", role="r", objective="o", input={"x": {"$from": "a"}}, after=["b"])


@pytest.mark.parametrize(
    ("status", "running", "expected"),
    [
        ({}, set(), Ready(("a", "b"))),
        ({"a": "accepted"}, {"b"}, Ready(())),
        ({"a": "accepted", "b": "accepted"}, set(), Ready(("m",))),
        ({"a": "accepted", "b": "accepted", "m": "accepted"}, set(), Done()),
        ({"a": "accepted", "b": "running"}, set(), Ready(("b",))),  # under way at a crash
        ({"a": "accepted", "b": "answered"}, set(), Ready(("b",))),  # a person answered it
        (
            {"a": "accepted", "b": "failed"},
            set(),
            Stalled("step(s) b ended without an output, so m cannot run"),
        ),
        (
            {"a": "escalated", "b": "accepted"},
            set(),
            Stalled("step(s) a ended without an output, so m cannot run"),
        ),
        ({"a": "accepted", "b": "gated"}, set(), Waiting("step(s) b wait at a human gate")),
    ],
)
def test_next_steps_from_where_the_steps_stand(
    status: dict[str, str], running: set[str], expected: object
) -> None:
    assert next_steps([A, B, M], status, running) == expected


def test_the_account_of_a_stall_is_one_line_per_step_and_no_output() -> None:
    account = stall_account(
        [A, B, M],
        {"a": "accepted", "b": "failed"},
        {"b": "left to the planner: failure ladder exhausted (failed: boom\nTraceback...)"},
        "step(s) b ended without an output, so m cannot run",
    )
    assert account.splitlines()[:4] == [
        "The plan stalled: step(s) b ended without an output, so m cannot run. What happened "
        "to each step:",
        "- a (r): accepted",
        "- b (r): failed: left to the planner: failure ladder exhausted (failed: boom "
        "Traceback...)",
        "- m (r): not run",
    ]


# --- definitions --------------------------------------------------------------------------------


def planned(**changes: Any) -> Phase:
    fields: dict[str, Any] = dict(
        name="research",
        plan_by="lead",
        input=lambda run: run.input,
        roles=["searcher", "merger"],
    )
    return Phase(**(fields | changes))


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"plan_by": "searcher"}, "plan_by", "a planner returns hubspoke.Plan"),
        ({"plan_by": "nobody"}, "plan_by", "no role named 'nobody'"),
        ({"roles": []}, "roles", "list the roles the plan may use"),
        ({"roles": ["ghost"]}, "roles", "no role named 'ghost'"),
        ({"role": "searcher"}, "role", "remove role="),
        ({"max_parallel": 0}, "max_parallel", "at least 1"),
        ({"max_replans": -1}, "max_replans", "at least 0"),
        ({"strategy": Strategy.RETRY}, "strategy", "a planned phase takes no"),
        ({"plan_by": None, "role": "searcher"}, "roles", "set plan_by="),
        ({"plan_by": None, "roles": ()}, "role", "give the phase a role (role='writer') or a"),
    ],
)
def test_a_wrong_planned_phase_is_refused(changes: dict[str, Any], field: str, says: str) -> None:
    wf = Workflow(name="w", input=Ask, roles=ROLES, phases=[planned(**changes)])
    with pytest.raises(DefinitionError) as raised:
        wf.check()
    assert raised.value.field == field and says in str(raised.value)


# --- end to end ---------------------------------------------------------------------------------


def workflow(lead: Any, *, roles: list[Role] | None = None, **phase: Any) -> Workflow:
    cards = [ROLE_CARDS["searcher"], ROLE_CARDS["merger"], *(roles or [])]
    return Workflow(
        name="planned",
        input=Ask,
        roles=[Role(name="lead", purpose="Plan.", input=Ask, output=Plan, function=lead), *cards],
        phases=[planned(**phase)],
        result=lambda run: run.step("research", "m"),
    )


def fixed(*plans: list[dict[str, Any]], seen: list[str | None] | None = None) -> Any:
    """A lead that plays `plans[n]` at its n-th dispatch (the last one after that), noting
    each dispatch's correction in `seen`."""
    calls: list[int] = []

    async def lead(ask: Ask, ctx: Context) -> Plan:
        calls.append(1)
        if seen is not None:
            seen.append(ctx.correction)
        return Plan.model_validate({"steps": plans[min(len(calls), len(plans)) - 1]})

    return lead


async def run(wf: Workflow, **kwargs: Any) -> tuple[Any, list[str], SQLiteStore]:
    store = SQLiteStore(":memory:")
    result = await Foreman(wf, store, **kwargs).run(Ask(topics=["tides"]))
    events = store.events(result.run_id)
    assert payload_errors(events) == []
    return result, stream(events), store


async def test_a_valid_plan_runs_its_steps_in_dependency_order_independent_ones_at_once() -> None:
    both_started = asyncio.Barrier(2)  # a and b each wait until the other has started

    async def search(query: Query, ctx: Context) -> Finding:
        if query.query in ("a", "b"):
            await asyncio.wait_for(both_started.wait(), 5)
        return Finding(query=query.query, text=f"{query.query} found")

    wf = workflow(fixed([step("a"), step("b"), merge_of("a", "b")]), max_parallel=2)
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=[
            wf.roles[0],
            Role(name="searcher", purpose="Search.", input=Query, output=Finding, function=search),
            ROLE_CARDS["merger"],
        ],
        phases=wf.phases,
        result=wf.result,
    )
    result, lines, _ = await run(wf)
    assert result.status == "completed"
    assert result.result == Answer(text="a found; b found")
    assert lines[:10] == [
        "run.started",
        "phase.started research items=0",
        "phase.started research:plan items=1",
        "dispatch.started research:plan lead research:plan[1] #1",
        "dispatch.finished research:plan lead research:plan[1] #1 output",
        "item.accepted research:plan lead research:plan[1]",
        "phase.finished research:plan completed",
        "plan.accepted research lead research:plan[1] rev=1 a,b,m",
        "dispatch.started research searcher research[a] #1",
        "dispatch.started research searcher research[b] #1",  # in flight together
    ]
    assert sorted(lines[10:14]) == [  # they end in either order
        "dispatch.finished research searcher research[a] #1 output",
        "dispatch.finished research searcher research[b] #1 output",
        "item.accepted research searcher research[a]",
        "item.accepted research searcher research[b]",
    ]
    assert lines[14:] == [
        "dispatch.started research merger research[m] #1",  # once both are accepted
        "dispatch.finished research merger research[m] #1 output",
        "item.accepted research merger research[m]",
        "phase.finished research completed",
        "run.finished completed",
    ]


async def test_an_invalid_plan_goes_back_to_the_planner_with_every_error() -> None:
    seen: list[str | None] = []
    bad = [step("a", "oracle"), step("b", input={"query": 7}), merge_of("a", "zz")]
    good = [step("a"), merge_of("a")]
    result, lines, _ = await run(workflow(fixed(bad, good, seen=seen)))
    assert result.status == "completed"
    assert lines[3:10] == [
        "dispatch.started research:plan lead research:plan[1] #1",
        "dispatch.finished research:plan lead research:plan[1] #1 output",
        "plan.rejected research lead research:plan[1] #1 errors=3",
        "item.retry research:plan lead research:plan[1] #2",
        "dispatch.started research:plan lead research:plan[1] #2",
        "dispatch.finished research:plan lead research:plan[1] #2 output",
        "item.accepted research:plan lead research:plan[1]",
    ]
    assert seen[0] is None
    assert seen[1] == (
        "Your previous output was invalid:\n"
        "- steps.0.role: no role named 'oracle' (roles this plan may use: searcher, merger)\n"
        "- steps.1.input.query: Input should be a valid string\n"
        "- steps.2.input.findings: no step 'zz' to take the output of (steps: a, b, m)"
    )
    # Nothing of the invalid plan ran.
    assert next(line for line in lines if "searcher" in line).endswith("research[a] #1")


async def test_a_planner_that_never_makes_a_valid_plan_ends_its_ladder() -> None:
    result, lines, _ = await run(workflow(fixed([step("a", "oracle")])))
    assert result.status == "waiting"  # escalated to a person, as any item whose ladder ends
    assert lines.count("plan.rejected research lead research:plan[1] #1 errors=1") == 1
    assert "item.stuck research:plan lead research:plan[1] #3" in lines  # same plan, same fix
    assert "item.escalated research:plan lead research:plan[1]" in lines
    assert not any("dispatch.started research searcher" in line for line in lines)
    assert (
        result.reason == "phase 'research': its planner 'lead' made no valid plan and waits "
        "for a person"
    )


def failing_search(fails: set[str]) -> Role:
    async def search(query: Query, ctx: Context) -> Finding:
        if query.query in fails:
            raise RuntimeError(f"no index for {query.query}")
        return Finding(query=query.query, text=f"{query.query} found")

    return Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=search,
        max_attempts=1,
    )


def with_searcher(wf: Workflow, searcher: Role) -> Workflow:
    roles = [searcher if r.name == "searcher" else r for r in wf.roles]
    return Workflow(name=wf.name, input=wf.input, roles=roles, phases=wf.phases, result=wf.result)


async def test_a_stalled_plan_is_replanned_keeping_what_was_accepted() -> None:
    seen: list[str | None] = []
    first = [step("a"), step("bad"), merge_of("a", "bad")]
    second = [step("b2"), merge_of("a", "b2", id="m")]
    wf = with_searcher(workflow(fixed(first, second, seen=seen)), failing_search({"bad"}))
    result, lines, store = await run(wf)
    assert result.status == "completed"
    assert result.result == Answer(text="a found; b2 found")
    after_first = lines[lines.index("plan.accepted research lead research:plan[1] rev=1 a,bad,m") :]
    assert [line for line in after_first if not line.startswith("dispatch.finished")] == [
        "plan.accepted research lead research:plan[1] rev=1 a,bad,m",
        "dispatch.started research searcher research[a] #1",
        "item.accepted research searcher research[a]",
        "dispatch.started research searcher research[bad] #1",
        "item.failed research searcher research[bad]",
        "plan.stalled research lead research:plan[1] rev=1",
        "phase.started research:plan items=2",
        "dispatch.started research:plan lead research:plan[2] #1",
        "item.accepted research:plan lead research:plan[2]",
        "phase.finished research:plan completed",
        "plan.accepted research lead research:plan[2] rev=2 b2,m",
        "dispatch.started research searcher research[b2] #1",  # a is kept, not run again
        "item.accepted research searcher research[b2]",
        "dispatch.started research merger research[m] #1",
        "item.accepted research merger research[m]",
        "phase.finished research completed",
        "run.finished completed",
    ]
    assert seen[1] is not None and seen[1].splitlines()[:4] == [
        "The plan stalled: step(s) bad ended without an output, so m cannot run. What happened "
        "to each step:",
        "- a (searcher): accepted",
        "- bad (searcher): failed: left to the planner: failure ladder exhausted (failed: "
        "RuntimeError: no index for bad)",
        "- m (merger): not run",
    ]
    state = result.state
    assert [p["revision"] for p in state.plans["research"].plans] == [1, 2]
    assert store.run(result.run_id) is not None


@pytest.mark.parametrize(
    ("strategy", "status"), [(Strategy.FAIL_FAST, "waiting"), (Strategy.BEST_EFFORT, "completed")]
)
async def test_past_max_replans_the_phase_ends_by_its_strategy(
    strategy: Strategy, status: str
) -> None:
    """Past the cap a step escalates to a person: a fail-fast phase waits for that person, a
    best-effort one completes without it (the run still waits for the escalated card)."""
    plans = [[step(f"bad{i}"), merge_of(f"bad{i}", id=f"m{i}")] for i in range(3)]
    wf = with_searcher(
        workflow(fixed(*plans), max_replans=1, strategy=strategy),
        failing_search({f"bad{i}" for i in range(3)}),
    )
    wf = Workflow(name=wf.name, input=Ask, roles=wf.roles, phases=wf.phases)
    result, lines, _ = await run(wf)
    assert [
        line for line in lines if line.startswith(("plan.", "item.escalated", "item.failed"))
    ] == [
        "plan.accepted research lead research:plan[1] rev=1 bad0,m0",
        "item.failed research searcher research[bad0]",  # left to the planner
        "plan.stalled research lead research:plan[1] rev=1",
        "plan.accepted research lead research:plan[2] rev=2 bad1,m1",
        "item.escalated research searcher research[bad1]",  # no replan left: to a person
    ]
    assert result.status == "waiting"
    assert f"phase.finished research {status}" in lines
    if status == "waiting":
        assert result.reason == (
            "phase 'research': the plan stalled (step(s) bad1 ended without an output, so m1 "
            "cannot run) with no replan left (max_replans=1)"
        )


async def test_a_planned_phase_never_overruns_the_run_budget() -> None:
    wf = workflow(
        fixed(
            [step(f"s{i}", after=[f"s{i - 1}"] if i else []) for i in range(5)] + [merge_of("s4")]
        ),
        max_steps=6,
    )
    wf = Workflow(name=wf.name, input=Ask, roles=wf.roles, phases=wf.phases, budget=Budget(steps=4))
    result, lines, _ = await run(wf)
    assert result.status == "exhausted"
    assert result.state.steps == 4  # the planner and three steps: the fourth step is refused
    assert "budget.refused research searcher research[s3] #1" in lines


async def test_a_later_static_phase_reads_the_plans_results() -> None:
    wf = workflow(fixed([step("a"), step("b"), merge_of("a", "b")]))
    report = Phase(
        name="report",
        role="merger",
        input=lambda run: Merge(
            findings=[o for o in run.outputs("research") if isinstance(o, Finding)]
        ),
    )
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=wf.roles,
        phases=[*wf.phases, report],
        result=lambda run: run.output("report"),
    )
    result, _, _ = await run(wf)
    assert result.result == Answer(text="a is known; b is known")


async def test_the_offline_model_plays_the_planner() -> None:
    bad = {"steps": [step("a", "merger")]}
    good = {"steps": [step("a"), merge_of("a")]}
    lead = Role(name="lead", purpose="Plan the research.", input=Ask, output=Plan)
    wf = Workflow(
        name="planned",
        input=Ask,
        roles=[lead, ROLE_CARDS["searcher"], ROLE_CARDS["merger"]],
        phases=[planned()],
        players={"lead": scripted(answer(bad), answer(good))},
        result=lambda run: run.step("research", "m"),
    )
    result, lines, _ = await run(wf)
    assert result.status == "completed"
    assert result.result == Answer(text="a is known")
    assert "plan.rejected research lead research:plan[1] #1 errors=1" in lines
    assert "plan.accepted research lead research:plan[1] rev=1 a,m" in lines


# --- a kill ---------------------------------------------------------------------------------------


async def test_a_killed_planned_run_resumes_without_rerunning_finished_steps(
    tmp_path: Path,
) -> None:
    db, effects = tmp_path / "journal.db", tmp_path / "effects.db"
    env = {"PLANNED_DB": str(effects), "PLANNED_SLEEP": "0.1"}
    os.environ["PLANNED_DB"] = str(effects)
    ref = "tests.workflows.planned:workflow"
    topics = [f"t{i}" for i in range(10)]  # all at once, ending 0.1 s apart
    # The planner's dispatch and at least three searches finish before the kill.
    start_and_kill(db, ref, "run_planned", {"topics": topics}, after=4, env=env)
    store = SQLiteStore(db)
    before = store.events("run_planned")
    assert before[-1].kind is not EventKind.RUN_FINISHED
    done_before = {e.item for e in before if e.kind is EventKind.ITEM_ACCEPTED}
    assert "research:plan[1]" in done_before
    result = await Foreman(load_workflow(ref), store).resume("run_planned")
    assert result.status == "completed"
    assert result.result == Answer(text="; ".join(f"{t} is known" for t in topics))
    events = store.events("run_planned")
    assert_contiguous(events)
    resumed_at = next(e.seq for e in events if e.kind is EventKind.RUN_RESUMED)
    rerun = {e.item for e in events[resumed_at:] if e.kind is EventKind.DISPATCH_STARTED}
    assert not rerun & done_before  # neither the planner nor a finished search ran again
    assert [e.kind for e in events].count(EventKind.PLAN_ACCEPTED) == 1
    accepted = [e.item for e in events if e.kind is EventKind.ITEM_ACCEPTED]
    assert len(accepted) == len(set(accepted)) == 12
    assert SideEffects(effects).count() == 10  # every search ran to its end once
    store.close()


# --- hubspoke show ------------------------------------------------------------------------------


def test_show_prints_the_plan_with_each_steps_role_dependencies_and_status(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from hubspoke.cli import app

    db = tmp_path / "v5.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "journal-v5.db", db)
    runner = CliRunner()
    report = json.loads(runner.invoke(app, ["show", "run_plans", "--db", str(db), "--json"]).stdout)
    assert report["plans"] == {
        "notes": {
            "plans": 2,
            "rejected": 1,
            "stalls": ["step(s) bad ended without an output"],
            "steps": [
                {
                    "id": "a",
                    "role": "noter",
                    "after": [],
                    "revision": 1,
                    "status": "accepted",
                    "objective": "note 1",
                },
                {
                    "id": "bad",
                    "role": "noter",
                    "after": [],
                    "revision": 1,
                    "status": "failed",
                    "objective": "note 0",
                },
                {
                    "id": "b",
                    "role": "noter",
                    "after": ["a"],
                    "revision": 2,
                    "status": "accepted",
                    "objective": "note 2",
                },
            ],
            "rationale": "one note each",
        }
    }
    human = runner.invoke(app, ["show", "run_plans", "--db", str(db)], terminal_width=120)
    assert human.exit_code == 0, human.stdout
    assert "plan of notes (2 plans accepted, 1 rejected, 1 stalled)" in human.stdout
    rows = [
        r
        for line in human.stdout.splitlines()
        if (r := line.split())[:1] in (["a"], ["bad"], ["b"])
    ]
    assert rows == [
        ["a", "noter", "-", "1", "accepted", "note", "1"],
        ["bad", "noter", "-", "1", "failed", "note", "0"],
        ["b", "noter", "a", "2", "accepted", "note", "2"],
    ]
    assert "why: one note each" in human.stdout  # the latest plan's rationale


# --- invariants ---------------------------------------------------------------------------------


async def test_a_steps_human_gate_holds_it_until_a_person_approves() -> None:
    from hubspoke import Board

    gated = Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=ROLE_CARDS["searcher"].function,
        approve_before_dispatch=True,
    )
    wf = with_searcher(workflow(fixed([step("a"), merge_of("a")])), gated)
    store = SQLiteStore(":memory:")
    first = await Foreman(wf, store).run(Ask(topics=["tides"]))
    assert first.status == "waiting"
    assert first.reason == "phase 'research': step(s) a wait at a human gate"
    assert not any(
        e.kind is EventKind.DISPATCH_STARTED and e.role == "searcher"
        for e in store.events(first.run_id)
    )
    board = Board(store, workflow=wf)
    [card] = board.cards(first.run_id, "review")
    board.approve(card.id, by="ada")
    done = await Foreman(wf, store).resume(first.run_id)
    assert done.status == "completed"
    assert done.result == Answer(text="a is known")
    planner_dispatches = [
        e
        for e in store.events(first.run_id)
        if e.kind is EventKind.DISPATCH_STARTED and e.role == "lead"
    ]
    assert len(planner_dispatches) == 1  # the accepted plan was not asked for again


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    searches=st.integers(1, 4),
    failing=st.sets(st.integers(0, 3)),
    steps_budget=st.integers(1, 9),
    max_replans=st.integers(0, 2),
)
def test_a_planned_run_never_dispatches_past_its_budget_and_always_ends(
    searches: int, failing: set[int], steps_budget: int, max_replans: int
) -> None:
    """Whatever fails and however small the budget: the planner, the steps and the replans
    together never make more dispatches than the run's step budget, and the run ends in a
    declared state."""
    counter = iter(range(1000))

    async def lead(ask: Ask, ctx: Context) -> Plan:
        round_ = next(counter)
        ids = [f"r{round_}s{i}" for i in range(searches)]
        return Plan.model_validate(
            {
                "steps": [step(i, input={"query": f"q{n}"}) for n, i in enumerate(ids)]
                + [merge_of(*ids, id=f"r{round_}m")]
            }
        )

    wf = with_searcher(
        workflow(lead, max_replans=max_replans, max_parallel=4),
        failing_search({f"q{n}" for n in failing}),
    )
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=wf.roles,
        phases=wf.phases,
        budget=Budget(steps=steps_budget),
    )
    store = SQLiteStore(":memory:")
    result = asyncio.run(Foreman(wf, store).run(Ask(topics=["x"])))
    events = store.events(result.run_id)
    dispatched = sum(1 for e in events if e.kind is EventKind.DISPATCH_STARTED)
    assert dispatched == result.state.steps <= steps_budget
    assert result.status in ("completed", "exhausted", "waiting", "failed")
    assert events[-1].kind is EventKind.RUN_FINISHED
    assert payload_errors(events) == []
    stalls = sum(1 for e in events if e.kind is EventKind.PLAN_STALLED)
    assert stalls <= max_replans


# --- kills at each plan decision, in process ----------------------------------------------------


@pytest.mark.parametrize("valid", [True, False])
async def test_a_kill_while_the_plan_is_checked_checks_it_again_without_asking_again(
    tmp_path: Path, valid: bool
) -> None:
    """The plan under check is journaled with its dispatch's end: a resume checks it again
    (and accepts or rejects it as the uncrashed run would), without dispatching the planner."""
    seen: list[str | None] = []
    plans = (
        [[step("a"), merge_of("a")]]
        if valid
        else [[step("a", "oracle")], [step("a"), merge_of("a")]]
    )
    wf = workflow(fixed(*plans, seen=seen))
    store = SQLiteStore(tmp_path / "j.db")
    checking = kill_when(lambda e: e.kind is EventKind.DISPATCH_FINISHED and e.role == "lead")
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[checking]).run(Ask(topics=["x"]), run_id="r")
    assert len(seen) == 1
    result = await Foreman(wf, store).resume("r")
    assert result.status == "completed"
    lines = stream(store.events("r"))
    after = lines[lines.index("run.resumed") :]
    if valid:
        assert seen == [None]  # not asked again
        assert after[:4] == [
            "run.resumed",
            "phase.started research items=0",
            "phase.started research:plan items=1",
            "item.accepted research:plan lead research:plan[1]",
        ]
    else:
        assert len(seen) == 2  # rejected again on resume, so the retry runs, once
        assert after[:4] == [
            "run.resumed",
            "phase.started research items=0",
            "phase.started research:plan items=1",
            "plan.rejected research lead research:plan[1] #1 errors=1",
        ]


async def test_a_kill_after_a_stall_asks_the_planner_again_with_the_same_account(
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []
    first = [step("a"), step("bad"), merge_of("a", "bad")]
    second = [step("b2"), merge_of("a", "b2", id="m")]
    wf = with_searcher(workflow(fixed(first, second, seen=seen)), failing_search({"bad"}))
    store = SQLiteStore(tmp_path / "j.db")
    stalled = kill_when(lambda e: e.kind is EventKind.PLAN_STALLED)
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[stalled]).run(Ask(topics=["x"]), run_id="r")
    assert seen == [None]
    result = await Foreman(wf, store).resume("r")
    assert result.status == "completed"
    assert result.result == Answer(text="a found; b2 found")
    [account] = [e.data["account"] for e in store.events("r") if e.kind is EventKind.PLAN_STALLED]
    assert seen == [None, account]  # the replan got the journaled account
    dispatched = [e.item for e in store.events("r") if e.kind is EventKind.DISPATCH_STARTED]
    assert dispatched.count("research[a]") == 1


async def test_each_step_gets_its_own_brief_and_the_planner_its_limits() -> None:
    briefs: dict[str, Any] = {}

    async def lead(ask: Ask, ctx: Context) -> Plan:
        briefs["lead"] = ctx.brief
        return Plan.model_validate(
            {"steps": [step("a", scope="tides only", siblings="b covers moons"), merge_of("a")]}
        )

    async def search(query: Query, ctx: Context) -> Finding:
        briefs[query.query] = ctx.brief
        return Finding(query=query.query, text="found")

    searcher = Role(
        name="searcher", purpose="Search.", input=Query, output=Finding, function=search
    )
    result, _, _ = await run(with_searcher(workflow(lead, max_steps=4, max_parallel=2), searcher))
    assert result.status == "completed"
    assert briefs["a"].to_dict() == {
        "objective": "do a",
        "scope": "tides only",
        "output_format": "",
        "siblings": "b covers moons",
    }
    assert briefs["lead"].objective == "Plan."  # the planner's purpose
    assert briefs["lead"].output_format.startswith(
        "A plan of at most 4 steps, at most 2 of them able to run at once, using only the roles "
        "searcher, merger."
    )
    # A model planner can only write valid inputs if it is told what each role takes.
    assert briefs["lead"].output_format.endswith(
        "The roles: searcher (Search.) takes {query: text, depth?: integer}; merger (Merge "
        "findings.) takes {findings: object[]}."
    )


def test_a_phase_named_like_a_planners_phase_is_refused() -> None:
    other = Phase(name="research:plan", role="searcher", input=lambda run: {"query": "q"})
    wf = Workflow(name="w", input=Ask, roles=ROLES, phases=[planned(), other])
    with pytest.raises(DefinitionError, match="runs as phase 'research:plan': rename one"):
        wf.check()


async def test_the_offline_model_planner_replans_from_the_account_in_its_prompt() -> None:
    from hubspoke.models.offline import Turn

    first = {"steps": [step("bad"), merge_of("bad")]}
    second = {"steps": [step("good"), merge_of("good", id="m2")]}

    def play(turn: Turn) -> Any:
        stalled = turn.correction is not None and "- bad (searcher): failed" in turn.correction
        return answer(second if stalled else first)

    lead = Role(name="lead", purpose="Plan the research.", input=Ask, output=Plan)
    wf = Workflow(
        name="planned",
        input=Ask,
        roles=[lead, failing_search({"bad"}), ROLE_CARDS["merger"]],
        phases=[planned()],
        players={"lead": play},
        result=lambda run: run.step("research", "m2"),
    )
    result, lines, _ = await run(wf)
    assert result.status == "completed"
    assert result.result == Answer(text="good found")
    assert [line for line in lines if line.startswith("plan.")] == [
        "plan.accepted research lead research:plan[1] rev=1 bad,m",
        "plan.stalled research lead research:plan[1] rev=1",
        "plan.accepted research lead research:plan[2] rev=2 good,m2",
    ]


async def test_a_step_that_times_out_is_left_to_the_planner() -> None:
    async def hang(query: Query, ctx: Context) -> Finding:
        if query.query == "slow":
            await asyncio.Event().wait()  # never answers: its time-out ends it
        return Finding(query=query.query, text=f"{query.query} found")

    searcher = Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=hang,
        timeout=0.05,
        max_attempts=1,
    )
    plans = [[step("slow"), merge_of("slow")], [step("quick"), merge_of("quick", id="m2")]]
    wf = with_searcher(workflow(fixed(*plans)), searcher)
    wf = Workflow(name=wf.name, input=Ask, roles=wf.roles, phases=wf.phases)
    result, lines, _ = await run(wf)
    assert result.status == "completed"
    assert "dispatch.finished research searcher research[slow] #1 timed_out" in lines
    assert "item.failed research searcher research[slow]" in lines
    assert "plan.accepted research lead research:plan[2] rev=2 quick,m2" in lines


def test_the_live_view_shows_the_plan_its_rejections_and_replanning() -> None:
    import io

    from rich.console import Console

    from hubspoke.cli.live import LiveProgress

    fixture = SQLiteStore(Path(__file__).parent / "fixtures" / "journal-v5.db", read_only=True)
    screen = io.StringIO()
    console = Console(file=screen, width=200)
    live = LiveProgress(console, "run_plans", ["notes"])
    events = fixture.events("run_plans")
    first = next(i for i, e in enumerate(events) if e.kind is EventKind.PLAN_ACCEPTED)
    for event in events[: first + 1]:
        live(event)
    console.print(live.render())
    assert "plan rejected notes:plan[1] (lead) 1 error(s): no role named 'oracle'" in (
        screen.getvalue()
    )
    for event in events[first + 1 :]:
        live(event)
    console.print(live.render())
    text = screen.getvalue()
    assert "plan notes:plan[1] (lead) 2 step(s): a (noter), bad (noter)" in text
    assert "replanning notes:plan[1] (lead) step(s) bad ended without an output" in text
    assert "plan notes:plan[2] (lead) 1 step(s): b (noter)" in text
